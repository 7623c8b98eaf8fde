"""Conversion of the four Deconver data sets into nnU-Net v2's raw format.

One script per data set, named after the nnU-Net folder it writes (ids and names from
:mod:`nnunet_deconver.paper`), runnable as a module or through ``nnunet-deconver convert``:

- ``Dataset501_ISLES22``  (``nnunet-deconver convert isles22 RAW_FOLDER``)
- ``Dataset502_BraTS23``  (``nnunet-deconver convert brats23 RAW_FOLDER``)
- ``Dataset503_GlaS``     (``nnunet-deconver convert glas RAW_FOLDER``)
- ``Dataset504_FIVES``    (``nnunet-deconver convert fives RAW_FOLDER``)

``brats_labels`` turns nnU-Net's BraTS predictions back into BraTS labels
(``nnunet-deconver brats-labels IN_FOLDER OUT_FOLDER``); ``instance_maps`` keeps GlaS's gland
instances beside the binary labels for the object-level metrics.

What the scripts share, one concern per module:

- ``_model``: cases, discovery results, the data set definition, :class:`ConversionError`;
- ``_discovery``: listing a raw folder, picking a case's files, saying why a path is unusable;
- ``_images``: reading, checking and writing 3D volumes (NIfTI) and 2D images (PNG / BMP);
- ``_splits``: the stratified 5-fold cross-validation;
- ``_pool``: running the cases in worker processes;
- ``_target``: the output root (``nnUNet_raw``) and the checks of the target folder;
- ``_output``: the locked, all-or-nothing output folder;
- ``_metadata``: ``dataset.json``, ``splits_final.json``, ``case_metadata.json``;
- ``_convert``: one conversion from start to end, and the dry run.

The command line itself lives in :mod:`nnunet_deconver.cli` (``convert``, ``brats_labels``); the
scripts' ``main`` calls into it. Importing this package is cheap: the image libraries load only when
a conversion runs.
"""

from dataset_conversion._model import ConversionError

__all__ = ["ConversionError"]
