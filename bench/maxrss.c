/* maxrss FILE PROG ARGS...: run PROG, write its peak RSS (KiB, wait4's ru_maxrss) to FILE,
 * exit with its status.  Why not wait4 from Python directly: a process exec'd from
 * the (15 MB) bench interpreter starts with that interpreter's high-water mark, since
 * the kernel carries the old mm's peak across execve.  This launcher is small, so the
 * child it forks starts from a tiny mm and its ru_maxrss is its own. */
#include <stdio.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fputs("usage: maxrss FILE PROG [ARGS...]\n", stderr);
        return 125;
    }
    pid_t pid = fork();
    if (pid < 0) return 126;
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 126;
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "%ld\n", ru.ru_maxrss);
        fclose(f);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
