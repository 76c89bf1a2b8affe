"""bnlib: Batch Normalization from scratch, checked against PyTorch."""
