"""The request pipeline: a pixel request in, a canonical event out to a sink, the GIF back."""
