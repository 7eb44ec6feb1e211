"""Generation: tokens from a backend, chosen, streamed as text and stopped.

Takes a backend (`backends.base.Backend`) and a `Tokenizer`, and gives the `Generator` (`generator`: prefill
in chunks of the plan's size, the decode loop, the cache of the previous prompt, cancel and timeout),
`SamplingParams` and the `Sampler` (`sampling`: penalties, top-k, top-p, min-p, temperature, seeded draws,
and the model files' own sampling defaults). `api.Model` wraps it for users.
"""

from .generator import GenerationStats, Generator
from .sampling import Sampler, SamplingError, SamplingParams

__all__ = ["GenerationStats", "Generator", "Sampler", "SamplingError", "SamplingParams"]
