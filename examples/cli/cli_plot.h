/* The SVG ROC plot of clipn eval (--plot): a grid of panels, one per OOD set, two columns so
 * that it fits a page. The points (also for --roc-csv) come from clipn_roc_curve. */
#ifndef CLIPN_CLI_PLOT_H
#define CLIPN_CLI_PLOT_H

#include <stddef.h>
#include <stdio.h>


typedef struct cli_roc_plot {
    FILE *f;
    int n_panels, cols, legend_rows;
    int panel_w, panel_h, top;
    int cur;     /* the current panel, -1 before the first */
    int n_drawn; /* curves of the current panel */
} cli_roc_plot;

/* Start the SVG on f: n_panels panels, up to legend_rows curves each; fpr95_note says how
 * FPR95 was computed (the title shows it). Writes only to f; the caller checks f. */
void cli_plot_begin(cli_roc_plot *p, FILE *f, int n_panels, int legend_rows,
                    const char *fpr95_note);
/* Next panel: ID vs ood_name (shortened with an ellipsis to fit the panel). */
void cli_plot_panel(cli_roc_plot *p, const char *ood_name);
/* A curve in the current panel. style picks colour, dash pattern and width, so curves that
 * coincide stay visible (the first drawn is the widest); its legend row shows AUROC and
 * FPR95 in aligned columns. */
void cli_plot_curve(cli_roc_plot *p, int style, const char *score, const double *fpr,
                    const double *tpr, size_t n, double auroc, double fpr95);
void cli_plot_end(cli_roc_plot *p);

#endif
