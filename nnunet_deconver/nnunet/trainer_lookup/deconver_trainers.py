"""Entry module for nnU-Net's ``nnUNet_extTrainer`` search (this folder is on that path).

nnU-Net imports every module here as a top-level module and looks the trainer up by name; the
classes themselves live in :mod:`nnunet_deconver.nnunet.trainers` and
:mod:`nnunet_deconver.nnunet.benchmark`.
"""

from nnunet_deconver.nnunet.trainers import *  # noqa: F401,F403
from nnunet_deconver.nnunet.benchmark import *  # noqa: F401,F403
