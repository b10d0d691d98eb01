"""What is done to an image around the model, in numpy/torch and independent of any method:
which slices and along which axis (slicing), intensity to [0, 1] (intensity), the square model
canvas and back (letterbox), and the 3D post-processing of labels (postprocess).
"""
