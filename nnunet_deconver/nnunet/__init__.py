"""nnU-Net v2 integration: trainers, plans -> network arguments, the paper's preset plans, demo."""
