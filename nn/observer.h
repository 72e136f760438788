/* Private to glassbox: the contract between nn/ and an observer of runs
 * built above it (the hook registry, hooks/hooks.c). nn/nn.h has the rest
 * of what an observer sees: gb_event, gb_observer_fn, gb_run_set_observer.
 *
 * Tree positions. A module tree is numbered depth-first from its root:
 * each module has a position (gb__nn_tree_index) and its subtree holds the
 * positions [index, gb__nn_tree_end). A tree is numbered again whenever it
 * changes shape (while it is built), which also bumps the root's generation
 * (gb__nn_tree_gen): positions taken at one generation are valid until the
 * generation changes. Runs only read the numbers, so runs on several
 * threads may share a tree.
 *
 * Interest. An observer says which events it wants through a gb__nn_interest
 * attached to the run next to it: bit (1u << kind) of mask[position] asks
 * for module events of that kind (GB_EVENT_INPUT, GB_EVENT_OUTPUT) from the
 * module at that position, and the same bit of `all` asks for them from
 * every module; named points (GB_EVENT_POINT) are asked for through `all`
 * only. nn reads the bits of its own kinds (below GB_EVENT_COUNT); the
 * higher bits of each byte are the observer's to use (hooks marks there
 * which modules have gradient hooks). The observer keeps the mask current
 * as listeners come and go, including during a run. A run with no
 * interest, or one that is not current (built for another tree, or for an
 * older generation of this one), delivers every event; the observer
 * rebuilds the mask when it sees that. */
#ifndef GB_NN_OBSERVER_H
#define GB_NN_OBSERVER_H

#include "nn.h"

/* ---- tree positions ----------------------------------------------------- */

/* The root of m's tree (m itself when it has no parent). */
gb_module *gb__nn_tree_root(const gb_module *m);
/* The number of modules in root's tree. */
int gb__nn_tree_number(gb_module *root);
/* m's depth-first position, and one past the last position of its subtree
 * (valid once its root is numbered, until the root's generation changes). */
int gb__nn_tree_index(const gb_module *m);
int gb__nn_tree_end(const gb_module *m);
/* The root's generation: bumped whenever the tree changes shape. */
unsigned gb__nn_tree_gen(const gb_module *root);

/* ---- interest ----------------------------------------------------------- */

typedef struct gb__nn_interest {
    const gb_module *root;
    unsigned gen;  /* gb__nn_tree_gen(root) it was built for */
    int size;      /* entries in mask: the tree's size then */
    uint8_t *mask; /* [size], or NULL: no module asked for */
    uint8_t all;
} gb__nn_interest;

/* Whether in describes its root's tree as it is now. */
bool gb__nn_interest_current(const gb__nn_interest *in);
/* Attach (or with NULL detach) the observer's interest to run; borrowed, it
 * must outlive the run's use of the observer. Setting an observer detaches it. */
void gb__nn_run_set_interest(gb_run *run, const gb__nn_interest *interest);

#endif
