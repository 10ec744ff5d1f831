"""Stage 3, mouth shapes to faces: the few-step sampler over the bundle's graphs and its
fixed step schedules."""
