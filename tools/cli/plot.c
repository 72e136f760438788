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
/* text with every byte the font has no glyph for (control characters,
 * UTF-8 sequences) as '?', cut to fit buf. */
static char *font_text(char *buf, size_t size, const char *text) {
    size_t n = 0;
    for (; text[n] && n + 1 < size; n++) buf[n] = text[n] == '\n' || (text[n] >= 32 && text[n] < 127) ? text[n] : '?';
    buf[n] = 0;
    return buf;
}

void gb_canvas_text(gb_canvas *c, int x, int y, const char *text, int scale, gb_rgb color) {
    char quads[64 * 1024], buf[256];
    int n = stb_easy_font_print(0, 0, font_text(buf, sizeof buf, text), NULL, quads, sizeof quads);
    for (int q = 0; q < n; q++) {
        const float *v0 = (const float *)(void *)(quads + q * 64), *v2 = (const float *)(void *)(quads + q * 64 + 32);
        int qx = (int)lroundf(v0[0]), qy = (int)lroundf(v0[1]);
        int qw = (int)lroundf(v2[0]) - qx, qh = (int)lroundf(v2[1]) - qy;
        gb_canvas_rect(c, x + qx * scale, y + qy * scale, qw * scale, qh * scale, color);
    }
}

int gb_canvas_text_width(const char *text, int scale) {
    char buf[256];
    return stb_easy_font_width(font_text(buf, sizeof buf, text)) * scale;
}

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

/* ---- heatmaps ----------------------------------------------------------- */

gb_rgb gb_cmap_color(gb_cmap map, double t) {
    /* matplotlib's viridis and RdBu_r, sampled at equal steps */
    static const gb_rgb viridis[] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
                                     {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    static const gb_rgb rdbu[] = {{5, 48, 97},      {33, 102, 172},  {146, 197, 222}, {247, 247, 247},
                                  {244, 165, 130},  {178, 24, 43},   {103, 0, 31}};
    const gb_rgb *stops = map == GB_CMAP_DIVERGING ? rdbu : viridis;
    int n = map == GB_CMAP_DIVERGING ? 7 : 9;
    t = isfinite(t) ? fmin(fmax(t, 0), 1) : 0;
    double f = t * (n - 1);
    int i = (int)f < n - 1 ? (int)f : n - 2;
    f -= i;
    gb_rgb a = stops[i], b = stops[i + 1];
    return (gb_rgb){(unsigned char)lround(a.r + f * (b.r - a.r)), (unsigned char)lround(a.g + f * (b.g - a.g)),
                    (unsigned char)lround(a.b + f * (b.b - a.b))};
}

/* margins, text scale, a line of text, characters of a label, the colour scale's least height */
enum { HM_PAD = 12, HM_TEXT = 2, HM_LINE = 20, HM_LABEL_CHARS = 8, HM_SCALE_H = 120 };
static int imax(int a, int b) { return a > b ? a : b; }

/* Where everything of a heatmap goes, relative to its top-left corner. */
typedef struct hm_layout {
    int left, top, cell_w, cell_h;
    int col_scale;   /* column names at this scale, or 0: stacked one character a line */
    int col_h;       /* height of the column names */
    int w, h;        /* without the colour scale */
} hm_layout;

/* text cut to HM_LABEL_CHARS bytes. */
static const char *hm_clip(char *buf, const char *text) {
    snprintf(buf, HM_LABEL_CHARS + 1, "%s", text ? text : "");
    return buf;
}

static hm_layout hm_layout_of(const gb_heatmap *hm) {
    hm_layout l = {0};
    char buf[HM_LABEL_CHARS + 1];
    int name_w = 0, label_w = 0, col_w = 0, col_len = 0;
    for (int r = 0; hm->row_names && r < hm->rows; r++)
        name_w = imax(name_w, gb_canvas_text_width(hm->row_names[r], HM_TEXT));
    for (int i = 0; hm->cells && i < hm->rows * hm->cols; i++)
        label_w = imax(label_w, gb_canvas_text_width(hm_clip(buf, hm->cells[i]), HM_TEXT));
    for (int c = 0; hm->col_names && c < hm->cols; c++) {
        col_w = imax(col_w, gb_canvas_text_width(hm_clip(buf, hm->col_names[c]), HM_TEXT));
        col_len = imax(col_len, (int)strlen(hm_clip(buf, hm->col_names[c])));
    }
    l.cell_w = hm->cell_w ? hm->cell_w : imax(imax(label_w, col_w) + 12, 44);
    l.cell_h = hm->cell_h ? hm->cell_h : 30;
    l.col_scale = col_w <= l.cell_w - 4 ? HM_TEXT : 0;
    l.col_h = !hm->col_names ? 0 : l.col_scale ? HM_LINE : col_len * 9 * HM_TEXT;
    l.left = HM_PAD + name_w + 10;
    l.top = HM_PAD + (hm->title ? HM_LINE + 10 : 0) + HM_LINE + 8;
    l.w = l.left + hm->cols * l.cell_w + HM_PAD;
    l.h = l.top + hm->rows * l.cell_h + 8 + l.col_h + 10 + (hm->xlabel ? HM_LINE : 0) + HM_PAD;
    int title_w = hm->title ? gb_canvas_text_width(hm->title, HM_TEXT) + 2 * HM_PAD : 0;
    if (l.w < title_w) l.w = title_w;
    if (l.h < l.top + HM_SCALE_H + HM_PAD) l.h = l.top + HM_SCALE_H + HM_PAD;
    return l;
}

int gb_heatmap_scale_width(const gb_heatmap *hm) {
    char label[64];
    double lo = hm->vmin, hi = hm->vmax, step = nice_step(&lo, &hi, 5);
    tick_label(label, sizeof label, fabs(hm->vmin) > fabs(hm->vmax) ? hm->vmin : hm->vmax, step);
    int w = 12 + 18 + 8 + gb_canvas_text_width(label, HM_TEXT) + 16 + HM_PAD;
    int lw = hm->scale_label ? 12 + gb_canvas_text_width(hm->scale_label, HM_TEXT) + HM_PAD : 0;
    return w > lw ? w : lw;
}

void gb_heatmap_size(const gb_heatmap *hm, int *w, int *h) {
    hm_layout l = hm_layout_of(hm);
    *w = l.w + gb_heatmap_scale_width(hm);
    *h = l.h;
}

static double hm_t(const gb_heatmap *hm, double v) {
    return hm->vmax > hm->vmin ? (v - hm->vmin) / (hm->vmax - hm->vmin) : 0.5;
}

void gb_heatmap_scale(gb_canvas *c, int x, int y, int h, const gb_heatmap *hm) {
    const gb_rgb black = {0, 0, 0};
    x += 12;
    if (hm->scale_label) gb_canvas_text(c, x, y - HM_LINE - 8, hm->scale_label, HM_TEXT, black);
    for (int j = 0; j < h; j++) /* vmax at the top */
        gb_canvas_rect(c, x, y + j, 18, 1, gb_cmap_color(hm->cmap, 1 - (double)j / (h > 1 ? h - 1 : 1)));
    double lo = hm->vmin, hi = hm->vmax, step = nice_step(&lo, &hi, 5);
    char label[64];
    for (double v = ceil(hm->vmin / step - 1e-9) * step; v <= hm->vmax + step * 1e-9; v += step) {
        int py = y + (int)lround((1 - hm_t(hm, v)) * (h - 1));
        gb_canvas_rect(c, x + 18, py, 5, 1, black);
        tick_label(label, sizeof label, v, step);
        gb_canvas_text(c, x + 28, py - 6, label, HM_TEXT, black);
    }
}

int gb_heatmap_draw(gb_canvas *c, int x, int y, const gb_heatmap *hm, bool scale) {
    const gb_rgb black = {0, 0, 0}, grey = {90, 90, 90}, blank = {200, 200, 200};
    hm_layout l = hm_layout_of(hm);
    char buf[HM_LABEL_CHARS + 1];
    int gx = x + l.left, gy = y + l.top, gw = hm->cols * l.cell_w, gh = hm->rows * l.cell_h;
    if (hm->title) gb_canvas_text(c, x + (l.w - gb_canvas_text_width(hm->title, HM_TEXT)) / 2, y + HM_PAD, hm->title, HM_TEXT, black);
    if (hm->ylabel) gb_canvas_text(c, x + HM_PAD, gy - HM_LINE - 8, hm->ylabel, HM_TEXT, grey);
    for (int r = 0; r < hm->rows; r++) {
        int cy = gy + r * l.cell_h;
        if (hm->row_names)
            gb_canvas_text(c, gx - 10 - gb_canvas_text_width(hm->row_names[r], HM_TEXT), cy + (l.cell_h - 14) / 2,
                           hm->row_names[r], HM_TEXT, black);
        for (int k = 0; k < hm->cols; k++) {
            double v = hm->v[r * hm->cols + k];
            gb_rgb col = isfinite(v) ? gb_cmap_color(hm->cmap, hm_t(hm, v)) : blank;
            int cx = gx + k * l.cell_w;
            gb_canvas_rect(c, cx, cy, l.cell_w, l.cell_h, col);
            if (!hm->cells || !hm->cells[r * hm->cols + k]) continue;
            const char *t = hm_clip(buf, hm->cells[r * hm->cols + k]);
            bool light = 0.299 * col.r + 0.587 * col.g + 0.114 * col.b > 140;
            gb_canvas_text(c, cx + (l.cell_w - gb_canvas_text_width(t, HM_TEXT)) / 2, cy + (l.cell_h - 14) / 2, t,
                           HM_TEXT, light ? black : (gb_rgb){255, 255, 255});
        }
    }
    for (int k = 0; hm->col_names && k < hm->cols; k++) {
        const char *t = hm_clip(buf, hm->col_names[k]);
        int cx = gx + k * l.cell_w + l.cell_w / 2;
        if (l.col_scale) {
            gb_canvas_text(c, cx - gb_canvas_text_width(t, l.col_scale) / 2, gy + gh + 8, t, l.col_scale, black);
            continue;
        }
        while (*t == ' ') t++; /* a word's leading space would be a blank line */
        for (int i = 0; t[i]; i++) { /* one character a line */
            char ch[2] = {t[i], 0};
            gb_canvas_text(c, cx - gb_canvas_text_width(ch, HM_TEXT) / 2, gy + gh + 8 + i * 9 * HM_TEXT, ch, HM_TEXT, black);
        }
    }
    gb_canvas_rect(c, gx - 1, gy - 1, gw + 2, 1, black);
    gb_canvas_rect(c, gx - 1, gy + gh, gw + 2, 1, black);
    gb_canvas_rect(c, gx - 1, gy - 1, 1, gh + 2, black);
    gb_canvas_rect(c, gx + gw, gy - 1, 1, gh + 2, black);
    if (hm->xlabel)
        gb_canvas_text(c, gx + (gw - gb_canvas_text_width(hm->xlabel, HM_TEXT)) / 2, gy + gh + 8 + l.col_h + 10, hm->xlabel,
                       HM_TEXT, grey);
    if (scale) gb_heatmap_scale(c, x + l.w, gy, imax(gh, HM_SCALE_H), hm);
    return gy;
}

bool gb_plot_heatmap(const char *path, const gb_heatmap *hm, int *w, int *h) {
    gb_heatmap_size(hm, w, h);
    gb_canvas *c = gb_canvas_new(*w, *h, (gb_rgb){255, 255, 255});
    if (!c) return false;
    gb_heatmap_draw(c, 0, 0, hm, true);
    bool ok = gb_canvas_save_png(c, path);
    gb_canvas_free(c);
    return ok;
}
