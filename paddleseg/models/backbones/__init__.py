from paddleseg.models.backbones.resnet_vd import (ResNet_vd, ResNet18_vd,
                                                  ResNet34_vd, ResNet50_vd,
                                                  ResNet101_vd, ResNet152_vd)
