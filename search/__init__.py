"""Network/accelerator co-search with a frozen learned evaluator (``dance-search``).

Modules, in the order a run uses them (docs/search.md is the user's guide):

- `search.network_space`: the supernet's skeleton, candidates and the layers they imply;
- `search.supernet`: the supernet (mixed blocks, architecture and precision logits) and the
  child network;
- `search.quant`: quantisation-aware training (fake quantisers with a straight-through
  estimator, the quantised conv and linear layers);
- `search.hardware`: the accelerator choice space, its logits and DANCE's generator;
- `search.cost`: the expected hardware cost from the frozen evaluator (metric, limits);
- `search.data`: digits and CIFAR-10, the weight/architecture split;
- `search.module`: the Lightning co-search (manual optimisation, two optimizers);
- `search.generator`: pre-training the generator on the simulator's best accelerators;
- `search.simulated`, `search.derive`, `search.verify`: simulation, derivation, results;
- `search.training`: plain Lightning training (retraining, baselines' short trainings);
- `search.baselines`, `search.compare`: sequential and simulator-in-the-loop baselines, and
  the comparison table;
- `search.sweep`: multirun summaries and the Pareto plot; `search.export`, `search.coverage`:
  the search space for dance-gen, and whether the evaluator covers it;
- `search.context`: what every method needs (data, spaces, evaluator, simulator, cost reference);
- `search.cosearch`: the co-search, derivation and results (every method ends with `finish`);
- `search.app`: the ``mode`` dispatcher (the only module that knows the modes);
  `search.cli`: the Hydra entry point.
"""
