/* Placeholder: the CNI helper replaces this with the fast-path shim. */
int main(void) { return 1; }
