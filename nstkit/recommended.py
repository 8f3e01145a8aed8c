"""The recipe nstkit recommends: what ``stylize()``, ``nstkit stylize`` and ``nstkit template``
use when given none.

Chosen by measurement, not taste: ``bench/recommend.py``'s equal-time rule over the 16 pairs of
the shared images at 256 px picks it (README, "Modern losses against the 2016 recipes";
``bench/RESULTS.md``). ``gatys`` stays the paper's reference.
"""

RECOMMENDED = "fast-wasserstein"
