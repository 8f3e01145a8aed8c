"""``nstkit compare``: several recipes (or one recipe across values of a key) on the same
content x style pairs, judged the same way, in one report."""

from nstkit.compare.collect import Collector, Entry
from nstkit.compare.publish import Comparison, publish
from nstkit.compare.variants import Variant, parse_sweep, plan_variants

__all__ = ["Collector", "Comparison", "Entry", "Variant", "parse_sweep", "plan_variants",
           "publish"]
