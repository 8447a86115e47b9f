/* The lesson image "hello-world": a static program, so the image needs no base. */
#include <stdio.h>

int main(void) {
    puts("\n"
         "Hello from How to Whale!\n"
         "This message shows that your Docker engine is working.\n"
         "\n"
         "To print it, Docker:\n"
         " 1. took your `docker run` command from the docker client,\n"
         " 2. found the \"hello-world\" image (pulling it from a registry if needed),\n"
         " 3. created a container from that image and started this program in it,\n"
         " 4. streamed what the program printed back to your client.\n"
         "\n"
         "Try something bolder next:  docker run -it busybox sh\n");
    return 0;
}
