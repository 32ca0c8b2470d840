"""The pipeline's steps, one a module: each annotates the event or rejects it with a reason."""
