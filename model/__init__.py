"""What training and serving share: nets (torch), preprocessing and the artifact (ONNX Runtime).

Importing this package imports neither torch nor ONNX Runtime: `model.nets` needs torch (training side),
`model.artifact` needs ONNX Runtime (serving side); each is imported only where it is used.
"""
