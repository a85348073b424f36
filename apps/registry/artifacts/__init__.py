"""Reading model artifacts without trusting them: what a pickle would import (found without
running it), the restricted unpickler that imports nothing else, skops loading and the
content checks that follow a load.

Nothing in this package imports Django, settings or any secret: the model runner
(apps.registry.isolation) imports it in a process that holds none.
"""
