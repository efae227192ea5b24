"""OperatorLearner as a scikit-learn estimator: parameters, clone, repr, NotFittedError, input
errors, the applicable estimator checks, GridSearchCV; and the same protocol without sklearn."""

import importlib.util
import inspect
import pickle
import sys

import numpy as np
import pytest
from problems import sparse_quantized

import pdunroll as pu

N = 8  # samples per signal


def _pairs(n_signals, seed=0):
    """Signals sparse in a random orthonormal basis, quantized at 3 bits (as test_training)."""
    return sparse_quantized(n_signals, N, seed)[:2]


ETA = 1 / 8  # pu.quantization_radius(3)
FAST = dict(eta=ETA, iterations=4, epochs=2, batch_size=16, progress=False)


def test_parameters_are_the_options_of_train():
    """Every option of train() is a parameter (so that clone and GridSearchCV keep it), with
    train's default, except those that belong to fit() (FIT_ONLY: validation, resume)."""
    from pdunroll.learning.learner import FIT_ONLY

    train = {n: p for n, p in inspect.signature(pu.train).parameters.items()
             if p.kind == p.KEYWORD_ONLY and n not in FIT_ONLY}
    params = pu.OperatorLearner(eta=ETA).get_params()
    missing = set(train) - set(params)
    assert not missing, (f"train options missing from OperatorLearner: {sorted(missing)}; add "
                         "each to OperatorLearner.__init__ with train's default, or to FIT_ONLY "
                         "if it belongs to fit()")
    assert set(params) - set(train) == {"model", "eta"}
    assert set(FIT_ONLY) <= set(inspect.signature(pu.OperatorLearner.fit).parameters)
    for name, p in train.items():
        assert params[name] == p.default, name


def test_get_set_params_and_repr():
    learner = pu.OperatorLearner(eta=ETA, lr=1e-2)
    assert learner.get_params()["lr"] == 1e-2 and learner.get_params()["eta"] == ETA
    assert learner.set_params(lr=3e-2, method=pu.Truncated(2)) is learner
    assert learner.lr == 3e-2 and learner.method == pu.Truncated(2)
    with pytest.raises(ValueError, match="learning_rate"):
        learner.set_params(learning_rate=1.0)
    # the short repr: only parameters that differ from their defaults
    assert repr(pu.OperatorLearner(eta=0.125, lr=0.01)) == "OperatorLearner(eta=0.125, lr=0.01)"


def test_missing_model_and_eta_is_reported_by_fit():
    xt, x = _pairs(16)
    learner = pu.OperatorLearner()  # scikit-learn's rule: the constructor checks nothing
    with pytest.raises(ValueError, match="model= or eta="):
        learner.fit(xt, x)
    with pytest.raises(ValueError, match="eta must be"):
        pu.OperatorLearner(eta=-1.0).fit(xt, x)


@pytest.mark.parametrize("call,args,error,match", [
    ("fit", (np.zeros(N), np.zeros(N)), ValueError, r"x_tilde must be a batch .* got a 1-D"),
    ("fit", (np.zeros((4, N)), np.zeros(N)), ValueError, r"x_true must be a batch .* 1-D"),
    ("fit", (np.zeros((4, N)), None), ValueError, "requires y to be passed"),
    ("fit", ([[0.0] * N] * 4, np.zeros((4, N))), TypeError, "x_tilde must be an array"),
    ("fit", (np.zeros((4, N), dtype=np.int64),) * 2, TypeError, "x_tilde .* real floating"),
    ("fit", (np.zeros((4, N, 2)),) * 2, ValueError, r"x_tilde .*\(n_signals, n_samples\)"),
    ("fit", (np.zeros((4, N)), np.zeros((4, N + 1))), ValueError, "x_true"),
    ("fit", (np.zeros((0, N)),) * 2, ValueError, "x_tilde has an empty batch"),
    ("fit", (np.full((4, N), np.nan), np.zeros((4, N))), ValueError, "x_tilde .*non-finite"),
])
def test_bad_input_is_named(call, args, error, match):
    with pytest.raises(error, match=match):
        getattr(pu.OperatorLearner(**FAST), call)(*args)


def test_sparse_input_is_refused_by_name():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="x_tilde is a sparse matrix"):
        pu.OperatorLearner(**FAST).fit(sparse.csr_matrix(np.ones((4, N))), np.ones((4, N)))


def test_fit_returns_self_keeps_params_and_is_reproducible():
    xt, x = _pairs(48)
    learner = pu.OperatorLearner(**FAST, lr=1e-2)
    before = learner.get_params()
    assert learner.fit(xt, x) is learner
    assert learner.get_params() == before  # fit sets only attributes ending in "_"
    first = learner.predict(xt)
    np.testing.assert_array_equal(learner.fit(xt, x).predict(xt), first)  # idempotent
    restored = pickle.loads(pickle.dumps(learner))
    np.testing.assert_array_equal(restored.predict(xt), first)
    # one signal at a time gives the rows of the batch (no coupling across the batch)
    np.testing.assert_allclose(learner.predict(xt[3:4])[0], first[3], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"x_tilde must be a batch .* x\[None\]"):
        learner.predict(xt[0])


# ---------------------------------------------------------------------------- with sklearn


def test_clone_not_fitted_error_and_tags():
    base = pytest.importorskip("sklearn.base", reason="scikit-learn is not installed "
                               "(pdunroll's sklearn extra)")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    xt, x = _pairs(32)
    learner = pu.OperatorLearner(**FAST, lr=1e-2, method=pu.Truncated(2))
    assert isinstance(learner, base.BaseEstimator) and base.is_regressor(learner)
    with pytest.raises(NotFittedError, match="not fitted"):
        learner.predict(xt)
    with pytest.raises(NotFittedError):
        check_is_fitted(learner)
    learner.fit(xt, x)
    check_is_fitted(learner)
    copy = base.clone(learner)
    assert copy.get_params() == learner.get_params() and not hasattr(copy, "model_")
    assert copy.method is not learner.method  # parameters are copied, not shared
    tags = learner.__sklearn_tags__()
    assert tags.target_tags.required and not tags.target_tags.single_output


def test_grid_search_over_two_learning_rates():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed "
                        "(pdunroll's sklearn extra)")
    from sklearn.model_selection import GridSearchCV, KFold

    xt, x = _pairs(96)
    search = GridSearchCV(pu.OperatorLearner(**FAST), {"lr": [1e-9, 3e-2]},
                          cv=KFold(3, shuffle=True, random_state=0))
    search.fit(xt, x)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"lr": 3e-2}  # 1e-9 leaves the DCT as it is
    assert scores[1] > scores[0]
    assert search.best_estimator_.lr == 3e-2 and hasattr(search.best_estimator_, "model_")
    assert search.score(xt, x) == pytest.approx(search.best_estimator_.score(xt, x))


# scikit-learn's generic checks fit on X with a 1-D (or n x 1) target y, often of integer
# dtype; OperatorLearner's target x_true is a batch of clean signals of X's shape and floating
# dtype, so every check that fits on such a y is refused at the first line of fit. What those
# checks test is tested above on (x_tilde, x_true) pairs.
_Y = ("fits on a 1-D or (n, 1) target y, often integer; x_true must have the shape and "
      "floating dtype of x_tilde (pairs of signals), which fit checks first")
EXPECTED_FAILED_CHECKS = {
    **{name: _Y for name in (
        "check_fit_score_takes_y", "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
        "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_regressors_train",
        "check_regressor_multioutput", "check_regressors_no_decision_function",
        "check_regressors_int", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
        "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
        "check_n_features_in", "check_fit2d_predict1d",
        "check_estimators_empty_data_messages")},
    "check_complex_data": "complex X is refused with a TypeError naming x_tilde and the real "
                          "floating dtype it needs (pdunroll's dtype errors are TypeErrors); "
                          "the check wants a ValueError",
    "check_dtype_object": "object X is refused with a TypeError naming x_tilde (no silent "
                          "conversion of dtypes anywhere in pdunroll)",
    "check_regressor_data_not_an_array": "X that is not an array-API array is refused with a "
                                         "TypeError naming x_tilde, as in the rest of pdunroll",
}


def _estimator_checks():
    try:
        from sklearn.utils.estimator_checks import parametrize_with_checks
    except ImportError:
        return pytest.mark.skip(reason="scikit-learn is not installed "
                                "(pdunroll's sklearn extra)")
    strict = ({"xfail_strict": True}  # scikit-learn >= 1.8
              if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters else {})
    return parametrize_with_checks([pu.OperatorLearner(**FAST)],
                                   expected_failed_checks=lambda e: EXPECTED_FAILED_CHECKS,
                                   **strict)


@_estimator_checks()
def test_sklearn_estimator_checks(estimator, check):
    """The applicable checks pass; the others are listed above with their reason (strict from
    scikit-learn 1.8 on: a listed check that starts passing fails here, so the list stays
    true)."""
    check(estimator)


def test_protocol_without_sklearn(monkeypatch):
    """With scikit-learn hidden, the learner keeps get_params/set_params, the short repr, and
    a NotFittedError that is a ValueError and an AttributeError like scikit-learn's. (A
    separate copy of the module is loaded, so pdunroll's own stays as it is.)"""
    import pdunroll.learning.learner as learner_module

    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    spec = importlib.util.spec_from_file_location("pdunroll.learning._learner_without_sklearn",
                                                  learner_module.__file__)
    plain = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, plain)
    spec.loader.exec_module(plain)

    learner = plain.OperatorLearner(eta=0.125, lr=0.01)
    assert [b.__name__ for b in type(learner).__mro__[1:]] == ["_Params", "object"]
    assert repr(learner) == "OperatorLearner(eta=0.125, lr=0.01)"
    assert learner.set_params(epochs=2).get_params()["epochs"] == 2
    with pytest.raises(ValueError, match="invalid parameter 'lr_'"):
        learner.set_params(lr_=1)
    copy = type(learner)(**learner.get_params())
    assert copy.get_params() == learner.get_params()
    with pytest.raises(plain.NotFittedError, match="not fitted") as info:
        learner.predict(np.zeros((2, N)))
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    xt, x = _pairs(16)
    assert learner.set_params(progress=False).fit(xt, x).predict(xt).shape == xt.shape
