"""Bad requests raise InvalidRequest / LimitExceeded naming the field and the allowed range."""

from __future__ import annotations

import pytest

from ecco_engine import (
    AttributionParams,
    EngineLimits,
    Explainer,
    ExplainRequest,
    GenerationParams,
    InvalidRequest,
    LimitExceeded,
    UnknownMethod,
)
from ecco_engine.errors import section
from tiny_models import tiny_model, tiny_tokenizer


@pytest.mark.parametrize(
    "build,field",
    [
        (lambda: GenerationParams(max_new_tokens=0), "max_new_tokens"),
        (lambda: GenerationParams(max_new_tokens=2.5), "max_new_tokens"),
        (lambda: GenerationParams(temperature=0), "temperature"),
        (lambda: GenerationParams(top_p=1.5), "top_p"),
        (lambda: GenerationParams(top_k=-1), "top_k"),
        (lambda: GenerationParams(stop=("",)), "stop"),
        (lambda: AttributionParams(n_steps=0), "n_steps"),
        (lambda: AttributionParams(target="entropy"), "target"),
        (lambda: AttributionParams(aggregation="max"), "aggregation"),
        (lambda: AttributionParams(integration="simpson"), "integration"),
        (lambda: AttributionParams(baseline="random"), "baseline"),
        (lambda: AttributionParams(target="contrastive"), "contrast_token"),
        (lambda: AttributionParams(contrast_token=5), "contrast_token"),
        (lambda: AttributionParams(positions=()), "positions"),
        (lambda: AttributionParams(positions=(-1,)), "positions"),
        (lambda: AttributionParams(methods=("grad_x_input", "grad_x_input")), "methods"),
        (lambda: AttributionParams(completeness_tolerance=-1.0), "completeness_tolerance"),
        (lambda: ExplainRequest(), "prompt"),
        (lambda: ExplainRequest(prompt=""), "prompt"),
        (lambda: ExplainRequest(prompt="x", continuation=""), "continuation"),
    ],
)
def test_field_errors_name_the_field(build, field):
    with pytest.raises(InvalidRequest) as error:
        build()
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}:")


@pytest.fixture(scope="module")
def explainer():
    return Explainer(tiny_model("gpt2"), tiny_tokenizer(), limits=EngineLimits(max_new_tokens=4, max_n_steps=64))


def test_unknown_method_lists_known_ones(explainer):
    with pytest.raises(UnknownMethod, match="grad_x_input"):
        explainer.explain(ExplainRequest(prompt="hi", attribution=AttributionParams(methods=("lime",))))


def test_limits_name_the_limit(explainer):
    with pytest.raises(LimitExceeded, match="at most 4"):
        explainer.generate(ExplainRequest(prompt="hi", generation=GenerationParams(max_new_tokens=5)))
    with pytest.raises(LimitExceeded, match="n_steps: must be at most 64"):
        explainer.explain(
            ExplainRequest(
                prompt="hi", generation=GenerationParams(max_new_tokens=2), attribution=AttributionParams(n_steps=65)
            )
        )


def test_position_out_of_range_names_the_range(explainer):
    request = ExplainRequest(
        prompt="hi", generation=GenerationParams(max_new_tokens=2), attribution=AttributionParams(positions=(5,))
    )
    with pytest.raises(InvalidRequest, match=r"positions: index 5 is out of range.*0\.\.1"):
        explainer.explain(request)


def test_contrast_token_must_be_one_token(explainer):
    request = ExplainRequest(
        prompt="hi",
        generation=GenerationParams(max_new_tokens=1),
        attribution=AttributionParams(target="contrastive", contrast_token="integrated gradients"),
    )
    with pytest.raises(InvalidRequest, match="contrast_token"):
        explainer.explain(request)


def test_explainer_serves_correctly_after_errors(explainer):
    request = ExplainRequest(prompt="hi", generation=GenerationParams(max_new_tokens=2))
    before = explainer.explain(request)
    with pytest.raises(InvalidRequest):
        explainer.explain(
            ExplainRequest(
                prompt="hi",
                generation=GenerationParams(max_new_tokens=2),
                attribution=AttributionParams(methods=("nope",)),
            )
        )
    after = explainer.explain(request)
    assert after.generation.generated_ids == before.generation.generated_ids
    assert (after.attributions[0].scores == before.attributions[0].scores).all()


def test_errors_leaving_the_explainer_name_the_full_path(explainer):
    with pytest.raises(LimitExceeded) as error:
        explainer.generate(ExplainRequest(prompt="hi", generation=GenerationParams(max_new_tokens=5)))
    assert (error.value.field, error.value.reason) == ("generation.max_new_tokens", "must be at most 4, got 5")
    with pytest.raises(UnknownMethod) as error:
        explainer.explain(ExplainRequest(prompt="hi", attribution=AttributionParams(methods=("lime",))))
    assert error.value.field == "attribution.methods"


def test_within_keeps_the_class_and_the_reason():
    error = LimitExceeded("watch[1]", "too many").within("internals")
    assert type(error) is LimitExceeded and (error.field, error.reason) == ("internals.watch[1]", "too many")
    assert str(error) == "internals.watch[1]: too many"
    with pytest.raises(UnknownMethod) as raised, section("attribution"):
        raise UnknownMethod("methods", "unknown")
    assert str(raised.value) == "attribution.methods: unknown"


def test_limits_from_a_config_mapping():
    limits = EngineLimits.from_mapping({"max_new_tokens": 7, "internals": {"max_top_k": 3}})
    assert limits.max_new_tokens == 7 and limits.internals.max_top_k == 3
    with pytest.raises(ValueError, match="max_new_tokenz"):
        EngineLimits.from_mapping({"max_new_tokenz": 7})
    with pytest.raises(ValueError, match=r"internals\.max_topk"):
        EngineLimits.from_mapping({"internals": {"max_topk": 3}})
