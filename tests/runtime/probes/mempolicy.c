/* Prints this process's NUMA memory policy as get_mempolicy(2) reports it: "mode flags nodes". */
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
    int mode = -1;
    unsigned long mask[16] = {0};
    if (syscall(SYS_get_mempolicy, &mode, mask, 16 * 8 * sizeof(unsigned long), 0, 0) != 0) {
        perror("get_mempolicy");
        return 1;
    }
    printf("%d %d %lx\n", mode & 0xff, mode & ~0xff, mask[0]);
    return 0;
}
