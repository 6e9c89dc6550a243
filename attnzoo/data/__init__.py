"""Datasets for training: Fashion-MNIST from its IDX files, image folders, and anything timm's
``create_dataset`` reads; small datasets stay in memory as tensors and are augmented a batch at a time."""

from attnzoo.data.factory import DataBundle, build_data
from attnzoo.data.fashion_mnist import FASHION_MNIST_ROOT, load_fashion_mnist, read_idx
from attnzoo.data.tensor_loader import TensorBatches, resize_images

__all__ = ["FASHION_MNIST_ROOT", "DataBundle", "TensorBatches", "build_data", "load_fashion_mnist", "read_idx", "resize_images"]
