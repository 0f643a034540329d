"""The fault suite of the production topology on one machine (`make faults`): a cluster
from `make run`, a steady load, faults one after another, and the invariants checked
after each (docs/faults.md)."""
