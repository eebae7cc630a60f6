"""Data: reading original dataset formats, prepared dataset folders, splits, preprocessing, augmentation, phantoms."""
