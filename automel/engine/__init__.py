"""The search engine: Optuna studies over plugin models, with pruning, resume, artifacts and export."""
