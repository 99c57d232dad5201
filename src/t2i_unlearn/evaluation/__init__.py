"""Evaluation: prompt sets from files, suites as YAML, an image cache, and the run that ties them to metrics and a report.

from t2i_unlearn.evaluation import evaluate
results = evaluate("toy", suite="toy_striped", out="runs/duo", lora=["adapters/duo"])
"""

from t2i_unlearn.evaluation.prompts import PromptItem, PromptSet, load_prompt_set, write_attack_set
from t2i_unlearn.evaluation.runner import evaluate
from t2i_unlearn.evaluation.suites import SuiteSpec, load_suite, suite_names

__all__ = ["PromptItem", "PromptSet", "SuiteSpec", "evaluate", "load_prompt_set", "load_suite", "suite_names", "write_attack_set"]
