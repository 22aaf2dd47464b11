/* The SVG ROC plot of clipn eval (cli_plot.h); the points are clipn_roc_curve's. */
#include "cli_plot.h"
#include "cli_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ SVG */

/* Panel geometry: the plot square at (MARGIN_L, TITLE_H) inside the panel, then the axis
 * labels, then the legend (a header row and one row per curve). */
enum { PANEL_W = 380, MARGIN_L = 56, PLOT = 280, TITLE_H = 34, AXIS_H = 44, ROW_H = 15 };

/* Escape for XML text or attributes; the text is neutralised first (cli_text). */
static void xml_text(FILE *f, const char *s, int width)
{
    char buf[512];
    cli_text_fit_middle(s, width, buf, sizeof buf);
    for (const char *c = buf; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*c, f);
        }
    }
}

static const char *const colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#17becf"};
static const char *const dashes[] = {"none", "8 4", "2 3", "10 3 2 3", "5 2", "1 4", "12 6", "4 4 1 4"};
#define N_STYLES ((int)(sizeof colors / sizeof colors[0]))

void cli_plot_begin(cli_roc_plot *p, FILE *f, int n_panels, int legend_rows,
                    const char *fpr95_note)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    p->n_panels = n_panels;
    p->cols = n_panels > 1 ? 2 : 1; /* 2 x 380 px = 760 px: the width of a portrait page */
    p->legend_rows = legend_rows;
    p->panel_w = PANEL_W;
    p->panel_h = TITLE_H + PLOT + AXIS_H + ROW_H * (legend_rows + 1) + 16;
    p->top = 46;
    p->cur = -1;
    int rows = (n_panels + p->cols - 1) / p->cols;
    int width = p->cols * PANEL_W, height = p->top + rows * p->panel_h;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, height, width, height);
    fprintf(f, "<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" "
               "font-weight=\"bold\">ROC curves: ID (positive) vs each OOD set, higher score = "
               "more ID</text>\n", width / 2);
    fprintf(f, "<text x=\"%d\" y=\"36\" text-anchor=\"middle\">FPR95 = FPR at TPR 0.95, ",
            width / 2);
    xml_text(f, fpr95_note, 90);
    fputs("</text>\n", f);
}

static void panel_origin(const cli_roc_plot *p, int *x0, int *y0)
{
    *x0 = (p->cur % p->cols) * p->panel_w + MARGIN_L;
    *y0 = p->top + (p->cur / p->cols) * p->panel_h + TITLE_H;
}

void cli_plot_panel(cli_roc_plot *p, const char *ood_name)
{
    FILE *f = p->f;
    if (p->cur >= 0)
        fputs("</g>\n", f);
    p->cur++;
    p->n_drawn = 0;
    int x0, y0;
    panel_origin(p, &x0, &y0);
    /* 13 px bold sans is about 8 px a column: the title stays inside its panel */
    fprintf(f, "<g>\n<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">ID vs ",
            x0, y0 - 12);
    xml_text(f, ood_name, (p->panel_w - MARGIN_L - 16) / 8 - 6);
    fputs("</text>\n", f);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
               "stroke=\"black\"/>\n", x0, y0, PLOT, PLOT);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#bbb\" "
               "stroke-dasharray=\"3 3\"/>\n", x0, y0 + PLOT, x0 + PLOT, y0);
    for (int t = 0; t <= 4; t++) {
        double v = t / 4.0;
        fprintf(f, "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\">%.2f</text>\n",
                x0 + v * PLOT, y0 + PLOT + 14, v);
        fprintf(f, "<text x=\"%d\" y=\"%g\" text-anchor=\"end\">%.2f</text>\n", x0 - 4,
                y0 + PLOT - v * PLOT + 4, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">FPR (OOD accepted as ID)</text>\n",
            x0 + PLOT / 2, y0 + PLOT + 30);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">"
               "TPR (ID accepted)</text>\n",
            x0 - 34, y0 + PLOT / 2, x0 - 34, y0 + PLOT / 2);
    int y95 = y0 + (int)lround(0.05 * PLOT);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>\n"
               "<text x=\"%d\" y=\"%d\" font-size=\"9\" fill=\"#666\">TPR 0.95</text>\n",
            x0, y95, x0 + PLOT, y95, x0 + PLOT + 3, y95 + 3);
    /* legend header: columns right-aligned on fixed x positions */
    int ly = y0 + PLOT + AXIS_H;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">score</text>"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-weight=\"bold\">AUROC</text>"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-weight=\"bold\">FPR95</text>\n",
            x0 + 34, ly, x0 + 190, ly, x0 + 260, ly);
}

void cli_plot_curve(cli_roc_plot *p, int style, const char *score, const double *fpr,
                    const double *tpr, size_t n, double auroc, double fpr95)
{
    FILE *f = p->f;
    int x0, y0;
    panel_origin(p, &x0, &y0);
    int k = style % N_STYLES;
    /* earlier curves wider: a later one drawn on top leaves the earlier's edges showing */
    double width = style < 7 ? 4.0 - 0.4 * style : 1.2;
    const char *dash = dashes[k];
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"0.9\"",
            colors[k], width);
    if (strcmp(dash, "none"))
        fprintf(f, " stroke-dasharray=\"%s\"", dash);
    fputs(" points=\"", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", x0 + fpr[i] * PLOT, y0 + PLOT - tpr[i] * PLOT);
    fputs("\"/>\n", f);
    int ly = y0 + PLOT + AXIS_H + ROW_H * (p->n_drawn + 1);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"%.1f\"",
            x0, ly - 4, x0 + 28, ly - 4, colors[k], width);
    if (strcmp(dash, "none"))
        fprintf(f, " stroke-dasharray=\"%s\"", dash);
    fputs("/>\n", f);
    fprintf(f, "<text x=\"%d\" y=\"%d\">", x0 + 34, ly);
    xml_text(f, score, 16);
    fprintf(f, "</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4f</text>"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4f</text>\n",
            x0 + 190, ly, auroc, x0 + 260, ly, fpr95);
    p->n_drawn++;
}

void cli_plot_end(cli_roc_plot *p)
{
    if (p->cur >= 0)
        fputs("</g>\n", p->f);
    fputs("</svg>\n", p->f);
}
