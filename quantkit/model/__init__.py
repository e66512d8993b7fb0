"""The model as rembg sees it: its family, its input, and photos in, masks out."""
