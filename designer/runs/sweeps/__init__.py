"""Design sweeps on Ray Tune: a spec (spec) and one made from a design (compose), its rows, background
processes and Pareto fronts (records), the driver's writer of the store (writer), the Ray driver (engine)
and the trial every node runs (trial).

Only engine and trial import Ray; the rest (and so the app's pages and `designer` itself) work
without it.
"""
