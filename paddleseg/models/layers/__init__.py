from paddleseg.models.layers.conv import ConvBNLayer, ConvBNReLU, ConvReLU

__all__ = ['ConvBNLayer', 'ConvBNReLU', 'ConvReLU']
