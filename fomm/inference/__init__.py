"""Animation: the Animator (source once, driving frames in batches), file-to-file animation,
the built-in demo."""
