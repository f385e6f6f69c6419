"""The export's attributes.json: per-class mean codes of the run's training data, when it has labels.

Read by the browser explorer and the Node CLI (``serving/node/attributes.js``) and by
``keras_vae.applications.attributes.AttributeTable.load``; the edit they apply is defined there.
A run whose data has no labels, or whose source cannot be read on the exporting machine, is
exported without the file; export.json says why.
"""
from __future__ import annotations

import logging
from typing import Any

from keras_vae.export import contract

log = logging.getLogger(__name__)


def run_attributes(model, config, enabled: bool = True) -> tuple[Any, dict[str, Any]]:
    """(AttributeTable or None, the export.json entry) for the run's model and configuration."""
    from keras_vae.applications.attributes import fit_attributes

    if not enabled:
        return None, {"file": None, "reason": "not requested (--no-attributes)"}
    if getattr(model, "num_classes", 0):
        return None, {"file": None, "reason": "the model is class-conditional: its decoder takes the class as a label "
                                               "input, so per-class mean codes are not how a class is chosen"}
    table = fit_attributes(model, config.data)
    if isinstance(table, str):
        log.warning("no %s: %s", contract.ATTRIBUTES_JSON, table)
        return None, {"file": None, "reason": table}
    return table, {"file": contract.ATTRIBUTES_JSON, "classes": list(table.labels), "counts": list(table.counts),
                   "fitted_on": table.fitted_on, "edit": "z + alpha * (mean[a] - mean[b])"}
