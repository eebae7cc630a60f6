"""Cell settings shared by the method tests (tests/transfer/test_method_*.py)."""

#: cell settings of the method tests: TINY runs the plumbing in seconds; LEARN trains a source segmenter that
#: learns the phantoms (Jaccard about 0.94 on held-out domain-a phantoms) in about 15 s
TINY_METHOD = dict(size=32, segmenter_kwargs={"depth": 2, "base_channels": 4}, source_iterations=2, device="cpu")
LEARN_METHOD = dict(size=32, segmenter_kwargs={"depth": 2, "base_channels": 8}, source_iterations=300, device="cpu")
