#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <ctype.h>

#define MAXLINE 80
#define SERV_PORT 6666

int main(void)
{
    struct sockaddr_in servaddr, cliaddr;
    socklen_t cliaddr_len;
    int listenfd, connfd;
    char buf[MAXLINE];
    char str[INET_ADDRSTRLEN];
    int i, n;

    //创建套接字
    listenfd = socket(AF_INET, SOCK_STREAM, 0);

    //将内存(字符串)前n个字节清零
    bzero(&servaddr, sizeof(servaddr));
    //绑定
    servaddr.sin_family = AF_INET;
    servaddr.sin_addr.s_addr = htonl(INADDR_ANY); //绑定是通配符地址
    servaddr.sin_port = htons(SERV_PORT);

    bind(listenfd, (struct sockaddr *)&servaddr, sizeof(servaddr));

    //监听套接字和backlog的值
    listen(listenfd, 20);

    printf("Accepting connections ...\n");
    while (1) {
        cliaddr_len = sizeof(cliaddr);
        //参数: 套接字, 获取的客户端的ip和端口信息, ipv4套接字结构体大小的地址
        connfd = accept(listenfd, (struct sockaddr *)&cliaddr, &cliaddr_len);
        //从客户端的连接套接字中读取数据
        n = read(connfd, buf, MAXLINE);
        if (n == 0) {
            printf("client close \n");
        }
        printf("received from %s at PORT %d\n",
               inet_ntop(AF_INET, &cliaddr.sin_addr, str, sizeof(str)),
               ntohs(cliaddr.sin_port));
        for (i = 0; i < n; i++) {
            //把每个转大写
            buf[i] = toupper(buf[i]);
        }
        //把消息写给客户端
        write(connfd, buf, n);
        //关闭客户端
        close(connfd);
    }
    return 0;
}
