/* The CLI's pictures: canvas, text, PNG output and line charts (plot.h). */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The one copy of stb_image_write in the CLI; static, so nothing leaks out. */
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop
#include <stb/stb_easy_font.h>

gb_canvas *gb_canvas_new(int w, int h, gb_rgb bg) {
    gb_canvas *c = malloc(sizeof *c);
    unsigned char *px = w > 0 && h > 0 ? malloc((size_t)w * (size_t)h * 3) : NULL;
    if (!c || !px) {
        free(c), free(px);
        return NULL;
    }
    *c = (gb_canvas){w, h, px};
    gb_canvas_rect(c, 0, 0, w, h, bg);
    return c;
}

void gb_canvas_free(gb_canvas *c) {
    if (c) free(c->px);
    free(c);
}

void gb_canvas_rect(gb_canvas *c, int x, int y, int w, int h, gb_rgb color) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y, x1 = x + w > c->w ? c->w : x + w, y1 = y + h > c->h ? c->h : y + h;
    for (int j = y0; j < y1; j++)
        for (int i = x0; i < x1; i++) {
            unsigned char *p = c->px + ((size_t)j * (size_t)c->w + (size_t)i) * 3;
            p[0] = color.r, p[1] = color.g, p[2] = color.b;
        }
}

/* A square of width pixels centred on each point, every half pixel along the line. */
void gb_canvas_line(gb_canvas *c, double x0, double y0, double x1, double y1, int width, gb_rgb color) {
    double len = fmax(fabs(x1 - x0), fabs(y1 - y0));
    int n = (int)ceil(2 * len) + 1, half = width / 2;
    for (int k = 0; k < n; k++) {
        double t = n > 1 ? (double)k / (n - 1) : 0;
        int x = (int)lround(x0 + t * (x1 - x0)), y = (int)lround(y0 + t * (y1 - y0));
        gb_canvas_rect(c, x - half, y - half, width, width, color);
    }
}

/* stb_easy_font builds text from axis-aligned quads (4 vertices of 16 bytes:
 * x, y, z floats and a colour); each quad becomes a rectangle. */
void gb_canvas_text(gb_canvas *c, int x, int y, const char *text, int scale, gb_rgb color) {
    char quads[64 * 1024];
    int n = stb_easy_font_print(0, 0, (char *)text, NULL, quads, sizeof quads);
    for (int q = 0; q < n; q++) {
        const float *v0 = (const float *)(void *)(quads + q * 64), *v2 = (const float *)(void *)(quads + q * 64 + 32);
        int qx = (int)lroundf(v0[0]), qy = (int)lroundf(v0[1]);
        int qw = (int)lroundf(v2[0]) - qx, qh = (int)lroundf(v2[1]) - qy;
        gb_canvas_rect(c, x + qx * scale, y + qy * scale, qw * scale, qh * scale, color);
    }
}

int gb_canvas_text_width(const char *text, int scale) { return stb_easy_font_width((char *)text) * scale; }

bool gb_canvas_save_png(const gb_canvas *c, const char *path) {
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return false;
    snprintf(tmp, n, "%s.tmp", path);
    bool ok = stbi_write_png(tmp, c->w, c->h, 3, c->px, c->w * 3) && rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    free(tmp);
    return ok;
}

/* ---- line charts -------------------------------------------------------- */

/* Ticks covering [lo, hi]: a step of 1, 2 or 5 times a power of ten giving
 * at most max_ticks intervals; the range grows to whole steps. */
static double nice_step(double *lo, double *hi, int max_ticks) {
    double span = *hi - *lo;
    if (!(span > 0)) span = fabs(*lo) > 0 ? fabs(*lo) : 1, *lo -= span / 2, *hi += span / 2;
    double raw = (*hi - *lo) / max_ticks, p = pow(10, floor(log10(raw))), step = 10 * p;
    const double m[] = {1, 2, 5};
    for (int i = 2; i >= 0; i--)
        if (m[i] * p >= raw) step = m[i] * p;
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}

static void tick_label(char *buf, size_t size, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-3)) snprintf(buf, size, "%.0e", v);
    else snprintf(buf, size, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
}

bool gb_plot_lines(const char *path, int w, int h, const char *title, const char *xlabel, const char *ylabel,
                   int nseries, const gb_series *series) {
    const gb_rgb white = {255, 255, 255}, black = {0, 0, 0}, grid = {225, 225, 225}, grey = {90, 90, 90};
    const int scale = 2, left = 90, right = 20, top = 44, bottom = 64;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < series[s].n; i++) {
            if (!isfinite(series[s].y[i])) continue;
            x0 = fmin(x0, series[s].x[i]), x1 = fmax(x1, series[s].x[i]);
            y0 = fmin(y0, series[s].y[i]), y1 = fmax(y1, series[s].y[i]);
        }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    double xs = nice_step(&x0, &x1, 8), ys = nice_step(&y0, &y1, 6);
    gb_canvas *c = gb_canvas_new(w, h, white);
    if (!c) return false;
    int pw = w - left - right, ph = h - top - bottom;
#define PX(x) (left + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (top + (y1 - (y)) / (y1 - y0) * ph)
    char label[64];
    for (double v = x0; v <= x1 + xs / 2; v += xs) {
        int px = (int)lround(PX(v));
        gb_canvas_rect(c, px, top, 1, ph, grid);
        gb_canvas_rect(c, px, top + ph, 1, 6, black);
        tick_label(label, sizeof label, v, xs);
        gb_canvas_text(c, px - gb_canvas_text_width(label, scale) / 2, top + ph + 10, label, scale, black);
    }
    for (double v = y0; v <= y1 + ys / 2; v += ys) {
        int py = (int)lround(PY(v));
        gb_canvas_rect(c, left, py, pw, 1, grid);
        gb_canvas_rect(c, left - 6, py, 6, 1, black);
        tick_label(label, sizeof label, v, ys);
        gb_canvas_text(c, left - 10 - gb_canvas_text_width(label, scale), py - 6, label, scale, black);
    }
    for (int s = 0; s < nseries; s++) {
        const gb_series *sr = &series[s];
        bool have = false;
        double px = 0, py = 0;
        for (int i = 0; i < sr->n; i++) {
            if (!isfinite(sr->y[i])) {
                have = false;
                continue;
            }
            double qx = PX(sr->x[i]), qy = PY(sr->y[i]);
            if (have) gb_canvas_line(c, px, py, qx, qy, sr->width, sr->color);
            px = qx, py = qy, have = true;
        }
        if (sr->name) { /* legend, top right, one line per series */
            int ly = top + 10 + 22 * s, lx = left + pw - 20 - gb_canvas_text_width(sr->name, scale);
            gb_canvas_rect(c, lx - 34, ly + 5, 26, 3, sr->color);
            gb_canvas_text(c, lx, ly, sr->name, scale, grey);
        }
    }
#undef PX
#undef PY
    gb_canvas_rect(c, left, top, 1, ph + 1, black);
    gb_canvas_rect(c, left, top + ph, pw + 1, 1, black);
    if (title) gb_canvas_text(c, left + (pw - gb_canvas_text_width(title, scale)) / 2, 12, title, scale, black);
    if (xlabel) gb_canvas_text(c, left + (pw - gb_canvas_text_width(xlabel, scale)) / 2, h - 26, xlabel, scale, grey);
    if (ylabel) gb_canvas_text(c, 8, 12, ylabel, scale, grey);
    bool ok = gb_canvas_save_png(c, path);
    gb_canvas_free(c);
    return ok;
}
