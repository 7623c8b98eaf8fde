"""nnU-Net v2 integration: the Deconver trainers and their variants, plans -> network arguments and
the paper's preset plans, the warm-up + cosine schedule, the five-epoch benchmark trainers, small
synthetic data sets in nnU-Net's raw format, and the start-up hook through which nnU-Net finds the
trainers (``nnUNet_extTrainer``)."""
