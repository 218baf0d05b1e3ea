"""Media in and out: image files, videos and frame folders, atomic writes."""
