/* Status names and error messages. */
#include "testutil.h"

START_TEST(status_names_are_distinct)
{
    for (int a = CLIPN_OK; a <= CLIPN_E_INTERNAL; a++)
        for (int b = a + 1; b <= CLIPN_E_INTERNAL; b++)
            ck_assert_str_ne(clipn_status_name((clipn_status)a), clipn_status_name((clipn_status)b));
    ck_assert_str_eq(clipn_status_name(CLIPN_E_FORMAT), "CLIPN_E_FORMAT");
}
END_TEST

START_TEST(missing_model_file_reports_path)
{
    clipn_model *m = (clipn_model *)1;
    clipn_error err;
    clipn_status s = clipn_model_load("/nonexistent/model.safetensors", NULL, &m, &err);
    ck_assert_int_ne(s, CLIPN_OK);
    ck_assert_int_eq(err.code, s);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/model.safetensors"));
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_names_are_distinct);
    tcase_add_test(tc, missing_model_file_reports_path);
    suite_add_tcase(s, tc);
    return s;
}
