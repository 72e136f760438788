/* Pictures for the CLI: an RGB canvas with rectangles, lines and text
 * (stb_easy_font's bitmap font), saved as PNG with stb_image_write, and a
 * line chart with axes built on it. The canvas knows nothing of charts, so
 * other pictures (heatmaps) can be drawn on it too. */
#ifndef GB_CLI_PLOT_H
#define GB_CLI_PLOT_H

#include <stdbool.h>

typedef struct gb_rgb {
    unsigned char r, g, b;
} gb_rgb;

typedef struct gb_canvas {
    int w, h;
    unsigned char *px; /* [h, w, 3] */
} gb_canvas;

/* A canvas filled with bg; NULL when out of memory. */
gb_canvas *gb_canvas_new(int w, int h, gb_rgb bg);
void gb_canvas_free(gb_canvas *c);
/* Pixels outside the canvas are ignored by every drawing call. */
void gb_canvas_rect(gb_canvas *c, int x, int y, int w, int h, gb_rgb color);
/* A line of the given width in pixels between two points (in pixels). */
void gb_canvas_line(gb_canvas *c, double x0, double y0, double x1, double y1, int width, gb_rgb color);
/* Text with its top-left corner at (x, y), each font pixel scale x scale. */
void gb_canvas_text(gb_canvas *c, int x, int y, const char *text, int scale, gb_rgb color);
int gb_canvas_text_width(const char *text, int scale);
/* Write a PNG; false when the file cannot be written. */
bool gb_canvas_save_png(const gb_canvas *c, const char *path);

/* A line chart: series of (x, y) points over shared axes with "nice" ticks
 * (1, 2 or 5 times a power of ten), grid lines, a title, axis labels and a
 * legend. Points with a non-finite y are skipped. */
typedef struct gb_series {
    const char *name;
    const double *x, *y;
    int n;
    gb_rgb color;
    int width;
} gb_series;
/* false when out of memory or the file cannot be written. */
bool gb_plot_lines(const char *path, int w, int h, const char *title, const char *xlabel, const char *ylabel,
                   int nseries, const gb_series *series);

/* Colour maps of heatmaps: SEQUENTIAL is viridis (dark purple = vmin,
 * yellow = vmax), DIVERGING blue-white-red with white at the middle of
 * [vmin, vmax] (matplotlib's RdBu reversed). */
typedef enum gb_cmap { GB_CMAP_SEQUENTIAL, GB_CMAP_DIVERGING } gb_cmap;
gb_rgb gb_cmap_color(gb_cmap map, double t); /* t in [0, 1], clamped */

/* A grid of coloured cells: rows top to bottom, columns left to right, each
 * cell optionally labelled (black or white, whichever reads on its colour),
 * row names on the left, column names below (stacked one character a line
 * when wider than a cell), a title, axis labels and a colour scale. Text is
 * ASCII: other bytes are drawn as '?'. */
typedef struct gb_heatmap {
    const char *title, *xlabel, *ylabel, *scale_label;
    int rows, cols;
    const double *v;                /* [rows, cols]; a non-finite value is a grey cell */
    const char *const *cells;       /* [rows, cols] labels, or NULL */
    const char *const *row_names;   /* [rows], or NULL */
    const char *const *col_names;   /* [cols], or NULL */
    double vmin, vmax;
    gb_cmap cmap;
    int cell_w, cell_h;             /* 0: fitted to the labels */
} gb_heatmap;
/* The picture's size in pixels. */
void gb_heatmap_size(const gb_heatmap *hm, int *w, int *h);
/* Draw hm with its top-left corner at (x, y); scale = false leaves out the
 * colour scale (panels sharing one). Returns the y of the grid's top. */
int gb_heatmap_draw(gb_canvas *c, int x, int y, const gb_heatmap *hm, bool scale);
/* The colour scale alone: a bar of height h at (x, y) with ticks, its
 * label above; it takes gb_heatmap_scale_width(hm) pixels across. */
void gb_heatmap_scale(gb_canvas *c, int x, int y, int h, const gb_heatmap *hm);
int gb_heatmap_scale_width(const gb_heatmap *hm);
/* hm alone as a PNG; its size in *w, *h. false when out of memory or the
 * file cannot be written. */
bool gb_plot_heatmap(const char *path, const gb_heatmap *hm, int *w, int *h);

#endif
