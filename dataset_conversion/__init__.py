"""Conversion of the four Deconver data sets into nnU-Net v2's raw format.

One script per data set, named in nnU-Net's style and runnable as a module or through
``nnunet-deconver convert``:

- ``Dataset501_ISLES22``  (``nnunet-deconver convert isles22 RAW_FOLDER``)
- ``Dataset502_BraTS23``  (``nnunet-deconver convert brats23 RAW_FOLDER``)
- ``Dataset503_GlaS``     (``nnunet-deconver convert glas RAW_FOLDER``)
- ``Dataset504_FIVES``    (``nnunet-deconver convert fives RAW_FOLDER``)

``brats_labels`` turns nnU-Net's BraTS predictions back into BraTS labels
(``nnunet-deconver brats-labels IN_FOLDER OUT_FOLDER``).

Importing this package is cheap: the image libraries load only when a conversion runs.
"""

from dataset_conversion._common import ConversionError

__all__ = ["ConversionError"]
