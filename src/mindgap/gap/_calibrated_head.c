/* The `calibrated` corrector's head scorer, compiled: the single-query search path
 * (mindgap.retriever.Retriever._search_single) scores each modality's first k candidates with it.
 *
 * It is the pure-Python head in mindgap/gap/calibrated.py (Calibrated._head_scorer), operation
 * for operation, in C doubles: the same libm exp/log, the same order of additions, no fused
 * multiply-add (built with -ffp-contract=off), so it returns the same floats (tests compare the
 * two). Built at install as an optional extension; without a C compiler mindgap uses the Python
 * head, which costs a few microseconds more per query (benchmarks/search.py --gap-overhead).
 *
 * head(ta, tb, lx, x0, depth, eps, coverage, sims, k) -> list[float]
 *   ta, tb, lx, x0: Calibrated._constants of (query modality, modality); depth: the list depth
 *   the posterior sums over; eps, coverage: the coverage gain's constants (the constants first:
 *   functools.partial binds them, and the result is a HeadScorer (sims, k) -> scores);
 *   sims: one modality's candidate scores, best first (a list of floats); k: how many to score.
 *
 *   top = max(sims[0]·ta + tb, lx);  e_i = exp(sims[i]·ta + tb − top)
 *   P_j = e_j / (Σ_{i<depth} e_i + exp(lx − top))
 *   score_j = P_j + coverage · log((S_j + N + ε) / (S_j − P_j + N + ε)),  S_j = P_1 + … + P_j,
 *   N = exp(x0 − top) / den (0 when x0 = −inf); coverage <= 0: score_j = P_j.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#define STACK_N 64

static PyObject *
head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 9) {
        PyErr_Format(PyExc_TypeError, "head() takes 9 arguments (%zd given)", nargs);
        return NULL;
    }
    double ta = PyFloat_AsDouble(args[0]);
    double tb = PyFloat_AsDouble(args[1]);
    double lx = PyFloat_AsDouble(args[2]);
    double x0 = PyFloat_AsDouble(args[3]);
    Py_ssize_t depth = PyLong_AsSsize_t(args[4]);
    double eps = PyFloat_AsDouble(args[5]);
    double coverage = PyFloat_AsDouble(args[6]);
    PyObject *sims = args[7];
    Py_ssize_t k = PyLong_AsSsize_t(args[8]);
    if (!PyErr_Occurred() && !PyList_Check(sims)) {
        PyErr_SetString(PyExc_TypeError, "head(): sims must be a list of floats");
        return NULL;
    }
    if (PyErr_Occurred())
        return NULL;
    if (depth < 1 || k < 0) {
        PyErr_Format(PyExc_ValueError, "head(): depth must be >= 1 and k >= 0 (got depth=%zd, k=%zd)", depth, k);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(sims);
    if (k > n)
        k = n;
    if (n == 0)
        return PyList_New(0);

    double stack[STACK_N];
    double *e = stack;
    if (n > STACK_N) {
        e = PyMem_Malloc((size_t)n * sizeof(double));
        if (e == NULL)
            return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    /* the list is read once into doubles: a float subclass or an int converts like float(x). An
     * object's __float__ may run Python code that changes the list: hold the item while it
     * converts and re-check the length before every read. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= PyList_GET_SIZE(sims)) {
            PyErr_SetString(PyExc_RuntimeError, "head(): sims changed size while it was read");
            goto done;
        }
        PyObject *item = PyList_GET_ITEM(sims, i);
        if (PyFloat_CheckExact(item)) {
            e[i] = PyFloat_AS_DOUBLE(item);
            continue;
        }
        Py_INCREF(item);
        e[i] = PyFloat_AsDouble(item);
        Py_DECREF(item);
        if (e[i] == -1.0 && PyErr_Occurred())
            goto done;
    }
    double top = e[0] * ta + tb;
    if (lx > top) /* Python's max(a, b): b only when b > a */
        top = lx;
    double c = tb - top;
    double den = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        e[i] = exp(e[i] * ta + c);
        if (i < depth)
            den += e[i];
    }
    den += exp(lx - top);
    double base = (x0 == -INFINITY) ? eps : exp(x0 - top) / den + eps;
    out = PyList_New(k);
    if (out == NULL)
        goto done;
    double cum = 0.0;
    for (Py_ssize_t j = 0; j < k; j++) {
        double p = e[j] / den;
        double v = p;
        if (!(coverage <= 0)) {
            cum += p;
            v = p + coverage * log((cum + base) / (cum - p + base));
        }
        PyObject *f = PyFloat_FromDouble(v);
        if (f == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, j, f);
    }
done:
    if (e != stack)
        PyMem_Free(e);
    return out;
}

static PyMethodDef methods[] = {
    {"head", (PyCFunction)(void (*)(void))head, METH_FASTCALL,
     "head(ta, tb, lx, x0, depth, eps, coverage, sims, k) -> list[float]: calibrated's scores of a "
     "best-first candidate list's first k (see mindgap.gap.calibrated.Calibrated.head_scorer)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mindgap.gap._calibrated_head",
    "The calibrated corrector's compiled head scorer (optional; pure Python otherwise).", -1, methods,
};

PyMODINIT_FUNC
PyInit__calibrated_head(void)
{
    return PyModule_Create(&module_def);
}
