/* Minimal test harness: each check that fails prints "FAIL <test>: <file>:<line>: <what>",
   each test that ends without failures prints "PASS <test>".  tests/run.sh counts them. */
#ifndef BITNET_TEST_H
#define BITNET_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *t_name = "";
static int t_failed_checks, t_tests_failed, t_tests_passed;

#define TEST(name) for (t_begin(name); t_running(); t_end())
static int t_running_flag;
static void t_begin(const char *name) { t_name = name; t_failed_checks = 0; t_running_flag = 1; }
static int t_running(void) { return t_running_flag; }
static void t_end(void) {
    t_running_flag = 0;
    if (t_failed_checks) t_tests_failed++;
    else { t_tests_passed++; printf("PASS %s\n", t_name); fflush(stdout); }
}
static void t_fail(const char *file, int line, const char *what) {
    if (t_failed_checks++ < 20) { printf("FAIL %s: %s:%d: %s\n", t_name, file, line, what); fflush(stdout); }
}
#define CHECK(cond) do { if (!(cond)) t_fail(__FILE__, __LINE__, #cond); } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) { char t_msg_[512]; snprintf(t_msg_, sizeof t_msg_, __VA_ARGS__); \
                                              t_fail(__FILE__, __LINE__, t_msg_); } } while (0)
/* For main(): exit status 1 when anything failed. */
#define TEST_EXIT() (t_tests_failed ? 1 : 0)
#endif
