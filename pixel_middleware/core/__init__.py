"""The canonical event, the GIF that answers it and the signals that announce it: what every layer speaks."""
