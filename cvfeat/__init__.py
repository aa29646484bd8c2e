"""cvfeat: the best image regression model for a budget of a few thousand parameters.

Classical features (HOG, colour histograms, SIFT bag-of-words, LBP) as
scikit-learn transformers, budget accounting for whole pipelines, and (with
the ``cnn`` extra) micro-CNNs that size themselves to a parameter budget.
"""

__version__ = "0.1.0"
