"""Training, evaluation and export of Siamese / metric-learning embedders. Serving never imports this."""
