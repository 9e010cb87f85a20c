"""The CAS-IQA metrics as text prompts: metric name -> the question the model is asked.

The one place they are written: ``CASIQA`` uses them when given no ``prompts``, and the cas_iqa
bundle's configs take theirs from here (``"prompts": "$dict(angiokit.networks.DEFAULT_PROMPTS)"``,
overridable with ``--prompts "{...}"``). The names are the benchmark's metrics
(``angiokit.data.quality.METRICS``), in its order: the targets' rows follow it.
"""

DEFAULT_PROMPTS = {
    "guidewire": "How visible is the guidewire in this synthetic angiogram?",
    "branch": "How well can the vessel branches be told apart in this synthetic angiogram?",
    "artifact": "How free is this synthetic angiogram from artifacts?",
}
