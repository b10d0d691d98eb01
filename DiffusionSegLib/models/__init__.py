"""Finding and loading models. A reference (references) is a hub id, a local diffusers folder
or a built-in test architecture (architectures, planted); weighted components load through
`loading.load_component` (safetensors only, errors for users); `stable_diffusion` assembles the
parts the methods use; `kinds` tells an SDSeg checkpoint from an SD model before any weight is
read; `hub` decides once whether the Hugging Face hub is reachable.
"""
