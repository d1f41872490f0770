"""The folds of the CV estimators: one place that chooses them and checks them.

Design: :class:`MultiLabelLogisticCV` fits every fold's path of ``C`` for
all labels jointly, one warm-started multi-label fit per ``C``; that needs
one set of folds shared by all labels. Folds stratified per label (a
``StratifiedKFold`` for each label, as ``OneVsRestClassifier`` around
``LogisticRegressionCV`` gets) would give every label its own training sets
and so one path per label and fold -- the cost the joint path exists to
avoid. :class:`MultiLabelStratifiedKFold` gives one set of folds for all
labels by iterative stratification (Sechidis, Tsoumakas and Vlahavas,
2011): the rows of the rarest label are dealt out first, each to the fold
that still lacks most of that label, and so on up to the most frequent
label; rows without a positive fill the folds up to equal size. Every label
with at least ``n_splits`` positives then has positives in every test fold
and so in every training fold, and its positive rate is about the same in
each. A label more often positive than not is stratified on its negatives
(its minority class), so that no training fold lacks a negative either.

The rows are shuffled first, with a fixed seed: data stored in a natural
order (grouped by class, by date, by source) would otherwise decide how the
ties of the dealing fall, and the folds would differ from shuffled ones in
what the order groups. scikit-learn's ``check_cv`` gives an unshuffled
``KFold`` for multi-label targets instead, which on ordered data holds out a
label's positives together: in scene's stored order four of the five
training folds of its first label have no positive.

:func:`check_multilabel_cv` is what both estimators call to turn their
``cv`` into a splitter; :func:`blind_folds` and :func:`warn_blind_folds` find
and report the training folds that lack a class of some label, whatever
splitter made them.
"""

import numbers
import warnings

import numpy as np
from scipy import sparse
from sklearn.model_selection import BaseCrossValidator, check_cv
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _num_samples

__all__ = ["MultiLabelStratifiedKFold", "check_multilabel_cv", "blind_folds"]

# The seed of the default folds: an int ``cv`` gives the same folds at every fit.
DEFAULT_SEED = 0


class FoldWarning(UserWarning):
    """A training fold lacks the positives or the negatives of some label."""


def _binarised(y):
    """``y`` as a CSC boolean (n_samples, n_labels) matrix: a target is positive at >= 0.5."""
    if sparse.issparse(y):
        Y = sparse.csc_matrix(y)
        Y.data = Y.data >= 0.5
        Y.eliminate_zeros()
        return Y.astype(bool)
    Y = np.asarray(y)
    Y = Y.reshape(len(Y), -1) if Y.ndim != 2 else Y
    return sparse.csc_matrix(Y.astype(np.float64) >= 0.5)


def _minority_rows(Y):
    """The rows of each label's minority class (its positives, or its negatives if rarer)."""
    n_samples = Y.shape[0]
    rows = []
    for j in range(Y.shape[1]):
        positives = Y.indices[Y.indptr[j]:Y.indptr[j + 1]]
        if 2 * len(positives) > n_samples:
            positives = np.setdiff1d(np.arange(n_samples), positives, assume_unique=True)
        rows.append(positives)
    return rows


def _iterative_stratification(Y, n_splits, rng):
    """The fold of every row: Sechidis et al.'s iterative stratification of ``Y``'s columns.

    ``Y`` is a CSC boolean matrix; each label is stratified on its minority
    class. Ties (folds that lack the label equally) go to the fold that
    lacks most rows, then to a random one.
    """
    n_samples = Y.shape[0]
    members = _minority_rows(Y)
    # The labels of each row (the transpose of ``members``), CSR-like.
    lengths = np.array([len(m) for m in members])
    row_labels = sparse.csr_matrix(
        (np.ones(lengths.sum(), dtype=bool),
         (np.concatenate(members) if len(members) else np.zeros(0, int),
          np.repeat(np.arange(len(members)), lengths))),
        shape=(n_samples, len(members)))
    row_labels.sort_indices()
    rows_wanted = np.full(n_splits, n_samples / n_splits)
    labels_wanted = np.tile(lengths / n_splits, (n_splits, 1))
    remaining = lengths.astype(np.float64)
    fold = np.full(n_samples, -1)
    noise = rng.uniform(size=(n_samples, n_splits))  # the last tie-break, fixed by the seed
    while np.any(remaining > 0):
        label = int(np.argmin(np.where(remaining > 0, remaining, np.inf)))
        for row in members[label]:
            if fold[row] >= 0:
                continue
            wanted = labels_wanted[:, label]
            ties = np.flatnonzero(wanted == wanted.max())
            if len(ties) > 1:
                by_rows = rows_wanted[ties]
                ties = ties[by_rows == by_rows.max()]
            chosen = ties[np.argmax(noise[row, ties])]
            fold[row] = chosen
            rows_wanted[chosen] -= 1
            labels = row_labels.indices[row_labels.indptr[row]:row_labels.indptr[row + 1]]
            labels_wanted[chosen, labels] -= 1
            remaining[labels] -= 1
    # Rows in no label's minority class fill the folds up to their size.
    for row in np.flatnonzero(fold < 0):
        chosen = int(np.argmax(rows_wanted + 1e-9 * noise[row]))
        fold[row] = chosen
        rows_wanted[chosen] -= 1
    return fold


class MultiLabelStratifiedKFold(BaseCrossValidator):
    """K folds with every label's positives spread over them: iterative stratification.

    One set of folds for all labels of a multi-label target, each label's
    positives (its negatives, where those are rarer) dealt out evenly over
    the test folds, rarest label first (Sechidis, Tsoumakas and Vlahavas,
    2011, "On the stratification of multi-label data"). A label with at
    least ``n_splits`` positives then has positives in every training fold.
    The rows are shuffled (with ``random_state``) before they are dealt
    out, so that the order the data are stored in does not shape the folds.
    Soft targets count as positive from 0.5. A 1-D target is one label.

    This is the splitter an int ``cv`` means for a multi-label target in
    :class:`~skbce.MultiLabelLogisticCV` and
    :class:`~skbce.MultiLabelThresholdCV`, with ``random_state=0``.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2.

    random_state : int, RandomState instance or None, default=0
        Seeds the shuffle of the rows and the breaking of ties. The default
        gives the same folds at every call; None different ones.

    See Also
    --------
    sklearn.model_selection.StratifiedKFold : The same for a single target.

    Examples
    --------
    >>> import numpy as np
    >>> from skbce.model_selection import MultiLabelStratifiedKFold
    >>> Y = np.zeros((12, 2), dtype=int)
    >>> Y[:3, 0] = 1          # the positives of each label are stored together
    >>> Y[6:10, 1] = 1
    >>> for train, test in MultiLabelStratifiedKFold(3).split(np.zeros((12, 1)), Y):
    ...     print(Y[test].sum(axis=0), Y[train].sum(axis=0))
    [1 1] [2 3]
    [1 2] [2 2]
    [1 1] [2 3]
    """

    def __init__(self, n_splits=5, *, random_state=DEFAULT_SEED):
        if not isinstance(n_splits, numbers.Integral) or n_splits < 2:
            raise ValueError(f"n_splits must be an int of at least 2; got {n_splits!r}.")
        self.n_splits = n_splits
        self.random_state = random_state

    def _iter_test_indices(self, X=None, y=None, groups=None):
        if y is None:
            raise ValueError("MultiLabelStratifiedKFold needs y, the labels to stratify.")
        n_samples = _num_samples(X)
        if self.n_splits > n_samples:
            raise ValueError(f"Cannot have n_splits={self.n_splits} greater than the number "
                             f"of samples: n_samples={n_samples}.")
        rng = check_random_state(self.random_state)
        order = rng.permutation(n_samples)
        Y = _binarised(y)
        if Y.shape[0] != n_samples:
            raise ValueError(f"y has {Y.shape[0]} rows but X has {n_samples}.")
        fold = np.empty(n_samples, dtype=np.intp)
        fold[order] = _iterative_stratification(Y[order], self.n_splits, rng)
        for k in range(self.n_splits):
            yield np.flatnonzero(fold == k)

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of folds.

        Parameters
        ----------
        X, y, groups : object
            Ignored, for compatibility.

        Returns
        -------
        n_splits : int
        """
        return self.n_splits


def _is_multi_output(y):
    """Whether ``y`` is a multi-label (or multi-output soft) target, or 1-D soft targets."""
    if sparse.issparse(y):
        return True
    kind = type_of_target(y)
    return kind not in ("binary", "multiclass")


def check_multilabel_cv(cv, y=None):
    """The splitter of a CV estimator's ``cv``, for its (encoded or raw) target ``y``.

    An int (or None: 5) gives :class:`MultiLabelStratifiedKFold` with the
    fixed seed ``DEFAULT_SEED`` for a multi-label target, a multi-output or
    1-D soft target; for a binary or multiclass 1-D target it gives
    ``StratifiedKFold``, as ``check_cv`` does. A splitter or an iterable of
    splits is used as it is.

    Parameters
    ----------
    cv : int, cross-validation generator, iterable or None
        The estimator's ``cv``.

    y : array-like, sparse matrix or None, default=None
        The target the folds are for; None means a multi-label one (what
        metadata routing asks the splitter of, before there is a target).

    Returns
    -------
    splitter : cross-validation generator
    """
    if cv is None:
        cv = 5
    if isinstance(cv, numbers.Integral) and (y is None or _is_multi_output(y)):
        return MultiLabelStratifiedKFold(cv, random_state=DEFAULT_SEED)
    return check_cv(cv, y, classifier=True)


def blind_folds(Y, folds):
    """Which training folds lack a class of which label: bool (n_folds, n_labels).

    A label is blind in a fold whose training rows hold no positive or no
    negative of it (a target counts as positive from 0.5). Labels constant
    in all the rows are never blind: there is nothing for a fold to see.
    """
    B = _binarised(Y).tocsr()
    n_labels = B.shape[1]
    total = np.asarray(B.sum(axis=0)).ravel()
    constant = (total == 0) | (total == B.shape[0])
    blind = np.zeros((len(folds), n_labels), dtype=bool)
    for k, (train, _) in enumerate(folds):
        positives = np.asarray(B[train].sum(axis=0)).ravel()
        blind[k] = ((positives == 0) | (positives == len(train))) & ~constant
    return blind


def _listed(indices, limit=10):
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > limit else "")


def warn_blind_folds(estimator, blind, fallback):
    """Warn, naming them, about the labels some training fold cannot see (see ``blind_folds``).

    ``fallback`` says what those labels get instead of a tuned choice.
    """
    labels = np.flatnonzero(blind.any(axis=0))
    if not len(labels):
        return
    folds = np.flatnonzero(blind.any(axis=1))
    worst = labels[np.argmax(blind[:, labels].sum(axis=0))]
    warnings.warn(
        f"{estimator}: the training part of fold(s) {_listed(folds)} has no positive or no "
        f"negative of label(s) {_listed(labels)} (label {int(worst)}: in fold(s) "
        f"{_listed(np.flatnonzero(blind[:, worst]))}), so those folds cannot score a "
        f"choice for them; those labels get {fallback}. With data stored in some order, "
        "shuffle the folds (an int cv stratifies them on every label); a label with fewer "
        "positives than folds cannot be in every training fold.",
        FoldWarning,
        stacklevel=5,  # the caller of fit (through sklearn's _fit_context)
    )
