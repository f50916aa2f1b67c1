#include "dt_test.h"
int main(void) { return DT_TEST_END(); }
