"""Chest X-ray segmentation: data pipeline, segmenters, losses, metrics, training and inference.

Knows nothing of translation.
"""
