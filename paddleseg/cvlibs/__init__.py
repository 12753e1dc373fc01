from paddleseg.cvlibs import manager
