"""Design sweeps on Ray Tune: a spec (spec), its rows and background processes (records), the driver's
writer of the store (writer), the Ray driver (engine) and the trial every node runs (trial).

Only engine and trial import Ray; the rest (and so the app's pages and `designer` itself) work
without it.
"""
