"""Methods: pure PyTorch models and losses, registered by name (see methods.registry)."""

# importing a module registers its builders
from methods import baseline, cnenet, dam, metric_learning, triplet, untrained  # noqa: F401
