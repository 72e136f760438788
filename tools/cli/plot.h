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

#endif
